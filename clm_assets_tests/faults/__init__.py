"""The fault suite: each test injects one fault a deployment meets, states what clm does,
and checks the stored data afterwards (nothing lost, nothing duplicated, nothing half
written). The README's fault table lists them; the daemon killed with a sensor's run in
flight is exercised inside the live loop (``clm_assets_tests/test_live_loop.py``), whose
daemon it reuses."""
