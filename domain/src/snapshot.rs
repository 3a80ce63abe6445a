//! The version of each aggregate's snapshot schema.
//!
//! A snapshot is an aggregate's state serialised at some version of its stream. Its shape and
//! meaning belong to the code that wrote it: a field added later, or one whose meaning changed,
//! would load from an old snapshot with a value that replaying the events would not give. So every
//! snapshot is stored with the schema version of the state that wrote it, and the store uses a
//! snapshot only when that version is the aggregate's current one; any other falls back to
//! replaying the stream (and the next snapshot is written with the current version).

/// An aggregate whose state may be stored in snapshots.
pub trait SnapshotSchema {
    /// The version of the state's stored shape and meaning. Bump it whenever a field of the state
    /// (or of anything it holds) is added, removed, renamed or comes to mean something else.
    /// Never 0: that marks snapshots written before versions existed, or by a writer that cannot
    /// tell (postgres-es), and no aggregate trusts those.
    const SNAPSHOT_VERSION: i32;
}

/// The schema version of snapshots written without one; never an aggregate's current version.
pub const UNVERSIONED: i32 = 0;
