"""The run machinery: the loop, steps, optimizer, checkpoints, workdir guard, records, configs."""
