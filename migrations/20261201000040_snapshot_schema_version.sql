-- The schema version of the aggregate state a snapshot holds (the aggregate's SNAPSHOT_VERSION in
-- the domain). A snapshot is used only when this is the aggregate's current version; any other
-- is ignored and the stream replayed, so a state whose shape or meaning changed is never read
-- back from an old snapshot (a defaulted field would otherwise take a value replay never gives).
--
-- A column, not a wrapper around the payload: postgres-es's stock repository keeps reading and
-- writing this table unchanged. Its rows, and every row written before this column existed, get
-- version 0, which no aggregate uses, so they are never trusted. A constant default makes the
-- column a catalogue change only (no table rewrite).
alter table snapshots add column schema_version integer not null default 0;
