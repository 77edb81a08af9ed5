"""Champion selection, domain side (no Dagster): each family's stitched out-of-sample
record (``record``), the statistics and gates that decide (``judge``), and the production
path that builds both from what the evaluation assets stored (``scoring``)."""
