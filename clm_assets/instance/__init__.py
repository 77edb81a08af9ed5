"""What the Dagster instance runs with (``dagster.yaml`` names it): the run launcher whose
run workers the daemon's run monitoring can check."""
