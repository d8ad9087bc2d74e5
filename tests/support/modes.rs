//! Shared by the test targets (`tests/system`, `tests/handlers`): running one test
//! body in both replication modes.

/// Makes each named test body — an `async fn(Replication)` of the enclosing module —
/// a test in both replication modes: `<module>::primary_backup::<name>` and
/// `<module>::raft::<name>`.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod primary_backup {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(common::wire::Replication::PrimaryBackup).await
                }
            )*
        }
        mod raft {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(common::wire::Replication::Raft).await
                }
            )*
        }
    };
}
pub(crate) use in_both_modes;
