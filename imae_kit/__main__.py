"""``python -m imae_kit`` is the ``imae-kit`` command; ``torchrun --nproc-per-node N -m imae_kit run RECIPE``
trains one run over N processes (see README, "Scale out")."""

from imae_kit.cli import main

if __name__ == "__main__":
    main()
