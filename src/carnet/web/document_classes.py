"""The DMP document classes (TRE_A03 classCodes) in the patient's words, as the portal names them."""

from __future__ import annotations

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
}
