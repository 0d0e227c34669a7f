"""Training: the one Trainer (``loop``), the Task interface, LR schedules. The public training
function is ``musgen.train`` (``musgen.api.train``)."""
