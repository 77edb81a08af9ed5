"""The Dagster UI as a person sees it: headless Chromium against ``dagster dev`` on a
persistent instance that the tests fill through the real assets."""
