"""Temporary probe."""
import time
from records import synthea_bundles, store_synthea, everything_differences, spread

def test_probe(client, auth):
    """Probe."""
    t0 = time.perf_counter(); probs = []; n = 0
    paths = spread(synthea_bundles(), 6)
    for p in paths:
        s = store_synthea(client, auth, p); n += len(s.expected)
        probs += everything_differences(client, s)
    print("TIME", time.perf_counter() - t0, n, len(probs))
    print("\n".join(probs[:40]))
