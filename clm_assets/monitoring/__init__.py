"""Monitoring: what the production model does after its promotion (paper trading) and when it degrades."""  # noqa: E501
