"""Multi-stack fusion: several thick series of one exam -> one isotropic volume (issue 25).

stacks (checks), register (rigid, SimpleITK), forward (the SRR forward model and its adjoint),
harmonise (intensities), solve (conjugate gradients), combine (`fuse`: all of it in order).
The network prior comes in as a function (runners/fuse.py), so nothing here imports torch.
"""
