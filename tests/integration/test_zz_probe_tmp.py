"""Temporary probe."""
import json
from records import hl7_examples, load, post, identifier_tokens

def test_probe(client, auth):
    """Probe."""
    for p in hl7_examples():
        if not p.name.startswith("Bundle-"): continue
        b = load(p)
        if b.get("type") not in ("transaction", "batch"): continue
        pats = [e["resource"] for e in b.get("entry", []) if (e.get("resource") or {}).get("resourceType") == "Patient"]
        toks = [t for r in pats for t in identifier_tokens(r)]
        h = auth(kind="patient", identifier=toks[0] if toks else "urn:x|1")
        r = post(client, "/fhir", b, h)
        print("BUNDLE", p.name, b["type"], toks, r.status_code, r.text[:600])
