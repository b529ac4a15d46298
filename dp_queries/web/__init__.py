"""The researcher portal and the DPO's privacy-budget pages."""
