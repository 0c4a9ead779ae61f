"""Software-defined medicine: chest-CT studies in, findings and a report draft out (see the README, SDM)."""
