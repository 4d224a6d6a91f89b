"""State that lives with a lane's partitions: stores, their changelogs, restore and the checkpoint."""
