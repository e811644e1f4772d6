"""Runtime pieces shared by the ASTRA services."""
