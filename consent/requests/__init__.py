"""Data-subject requests (GDPR Art. 12, 15-21) with their deadlines and the DPO's queue."""
