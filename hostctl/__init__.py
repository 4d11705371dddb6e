"""hostctl: tune the color organ's RC filters from bench measurements.

The pipeline, one module per step::

    plan tones   -> hostctl.gaindesign, hostctl.plan (a designed batch or a log sweep, then
                                        adaptive refinement)
    play         -> hostctl.audio       (sounddevice tones; backends add their own outputs)
    measure      -> hostctl.device      (the probe over serial: serial_for_url, PROTOCOL.md)
    record       -> hostctl.sessionlog  (session CSV, appended + fsynced per measurement)
    fit          -> hostctl.fit         (torch autograd: Levenberg-Marquardt / LED intervals)
    recommend    -> hostctl.recommend   (E-series values, pairs, designs for a target)
    report       -> hostctl.report      (table, report.json, bode.png)

Data types, defined once: :class:`hostctl.dataset.Measurement` /
:class:`~hostctl.dataset.MeasurementSet` and :class:`hostctl.fit.FitResult`.
Circuits live in a registry (:mod:`hostctl.circuits`); errors are the few classes in
:mod:`hostctl.errors`.

Quick use::

    from hostctl import circuits, fit, dataset
    data = dataset.MeasurementSet.read_csv("examples/notebook_gain.csv")
    result = fit.fit(data, circuits.get_circuit("color-organ-ideal"))
    print(result.values)
"""

__version__ = "0.1.0"
