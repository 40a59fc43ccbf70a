"""The benchmark: throughput, requests per row, throttling and memory against the modelled service."""
