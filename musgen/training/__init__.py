"""Training: the one Trainer (``trainer``; ``loop.fit`` runs it), the Task interface, LR schedules. The public training
function is ``musgen.train`` (``musgen.api.train``)."""
