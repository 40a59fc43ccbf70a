"""The Dataverse Web API client: auth, retries and throttling, paging, metadata, bulk writes.

It never imports the planner or the worker; they depend on it.
"""
