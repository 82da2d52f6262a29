"""Delivery of the patient's notices (an adapter): e-mail rendering and the outbox worker.

``messages`` renders a notice as an e-mail in French or English; ``worker`` claims due outbox
messages and sends them over SMTP. The use case that enqueues notices is
``carnet.services.notifications``; only the composition roots wire this package.
"""
