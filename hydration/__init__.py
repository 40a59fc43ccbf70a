"""CustomerId Backstamping Hydration: link unified Dataverse rows to their Customer Insights profile."""
