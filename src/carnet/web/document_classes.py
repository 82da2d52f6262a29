"""The DMP document classes (TRE_A03 classCodes) in the patient's words, as the portal names them.

A device feed writes measure types (their LOINC code) instead of classes: they are named as
the « Mesures de santé » profiles are (``85354-9`` → Blood pressure / Tension artérielle).
"""

from __future__ import annotations

from carnet.feeds.devices import measure_labels

CLASSES = {
    "10": "Reports",
    "11": "Summaries",
    "31": "Imaging",
    "42": "Prescriptions",
    "43": "Dispensations",
    "44": "Care plans",
    "45": "Treatments administered",
    "52": "Certificates",
    "60": "Reimbursements",
    "90": "My own documents",
    "95": "Administrative",
    **measure_labels(),
}
