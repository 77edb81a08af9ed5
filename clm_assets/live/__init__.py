"""Live serving: a replay exchange on loopback that plays any source with a virtual clock."""
