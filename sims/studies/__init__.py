"""Runnable checks of the homework results hostctl is built on (EECS 182 HW0, problems 1-5).

Each study is one module with a function that returns its numbers (the tests assert the
claim on them) and a ``main()`` that prints a short table::

    python -m sims.studies.p1_gd_stability      # GD's error grows at most linearly
    python -m sims.studies.p2_ridge_augmentation  # ridge == OLS on [X; Gamma], [y; 0]
    python -m sims.studies.p3_vector_calculus   # the identities, against autograd
    python -m sims.studies.p4_relu_elbow        # the ReLU elbow after one SGD step
    python -m sims.studies.p5_color_organ       # the notebook's parts (c)-(i) vs hostctl
        [--notebook]    the notebook's own learning rates (about a minute)
        [--spread N]    the spread of the notebook's answers over N draws of the tones

They keep the homework's notation so a reader can hold the two side by side.
"""
