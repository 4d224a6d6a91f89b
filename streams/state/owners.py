"""Who holds which partition of a stateful lane, known to every worker of its group.

A lane with stores assigns by range, so one partition number of every topic it reads goes to
one worker, with the stores. The group's leader computes the assignment; this assignor also
puts each worker's web address in its join metadata, and the whole map of partition to
address in every worker's assignment, so any worker can send an HTTP request for a member
to the worker holding the member's card (as faust's table routes did for its tables).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata


class OwnersAssignor(RangePartitionAssignor):
    """Range assignment that tells every member the web address holding each partition."""

    name = "mallstream-range"

    def __init__(self, address: str) -> None:
        self.address = address
        #: partition -> web address of the worker holding it, as of the last assignment
        self.owners: dict[int, str] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        return ConsumerProtocolMemberMetadata(self.version, list(topics), self.address.encode())

    def assign(
        self,
        cluster: ClusterMetadata,  # type: ignore[override]
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        assigned = super().assign(cluster, members)
        owners = {
            partition: members[member].user_data.decode()
            for member, assignment in assigned.items()
            for _, partitions in assignment.assignment
            for partition in partitions
        }
        told = json.dumps(owners).encode()
        return {
            member: ConsumerProtocolMemberAssignment(self.version, assignment.assignment, told)
            for member, assignment in assigned.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        self.owners = {
            int(partition): address for partition, address in json.loads(assignment.user_data or b"{}").items()
        }
