//! When a session may move: the conversation bookkeeping behind a safe point.
//!
//! CockroachDB calls a point safe when the last client message was none, Sync, Query, CopyDone
//! or CopyFail and the last server message was ReadyForQuery. That misses pipelining (a client
//! that sent two queries is not done after the first ReadyForQuery) and ignores the status of
//! the ReadyForQuery. weir counts instead: every Query, FunctionCall and Sync asks for exactly
//! one ReadyForQuery, so the session is quiet when none is outstanding, no extended-protocol
//! message is waiting for its Sync, no COPY is running, and the last ReadyForQuery said idle.
//!
//! The server ignores Sync in copy-in mode, and a pipelining client (tokio-postgres sends
//! Bind, Execute, Sync, then the CopyData) may send that Sync before the proxy has seen the
//! CopyInResponse. So the Syncs sent between the last Execute and the client's first copy
//! message are taken off the count when that copy message goes by, provisionally until the
//! server confirms the copy with CopyInResponse; an ErrorResponse or CommandComplete instead
//! means the copy never started, and they count again. Until then the point is not safe.

use super::message::TransactionStatus;

/// The conversation state that decides whether the session is at a safe point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SafePoint {
    /// Query, FunctionCall and Sync messages sent without their ReadyForQuery yet.
    pub outstanding: u64,
    /// An extended-protocol message (Parse, Bind, Describe, Execute, Close, Flush) was sent
    /// after the last Sync.
    pub unsynced: bool,
    /// The server entered copy-in; the client has not yet sent CopyDone or CopyFail.
    pub copy_in: bool,
    /// The server entered copy-out or copy-both; cleared by ReadyForQuery.
    pub copy_out: bool,
    /// The status of the last ReadyForQuery, if nothing but asynchronous messages (notices,
    /// notifications, parameter changes) came from either side since.
    pub ready: Option<TransactionStatus>,
    /// The client sent Terminate.
    pub terminated: bool,
    /// Syncs the client sent since its last Execute or Query.
    pub syncs_since_execute: u64,
    /// The client is sending copy data for a copy it has not yet ended.
    pub client_copying: bool,
    /// Syncs taken off `outstanding` because the server ignores them in copy-in mode, while
    /// the server has not yet confirmed (CopyInResponse) that the copy started.
    pub unconfirmed_copy_syncs: Option<u64>,
}

impl SafePoint {
    /// Account for a message the client sent (seen at its header).
    pub fn client_message(&mut self, tag: u8) {
        self.ready = None;
        match tag {
            // The server ignores Sync and Flush in copy-in mode: they ask for nothing.
            b'S' | b'H' if self.copy_in => {}
            b'S' if self.client_copying => {
                if let Some(n) = self.unconfirmed_copy_syncs.as_mut() {
                    *n += 1;
                }
            }
            b'd' | b'c' | b'f' => {
                if !self.client_copying {
                    self.client_copy_begins();
                }
                self.client_copying = tag == b'd';
                if tag != b'd' {
                    self.copy_in = false;
                }
            }
            b'Q' | b'F' | b'S' => {
                self.outstanding = self.outstanding.saturating_add(1);
                self.unsynced = false;
                match tag {
                    b'S' => self.syncs_since_execute += 1,
                    b'Q' => self.syncs_since_execute = 0,
                    _ => {}
                }
            }
            b'E' => {
                self.syncs_since_execute = 0;
                self.unsynced = true;
            }
            b'X' => self.terminated = true,
            // Parse, Bind, Describe, Execute, Close, Flush and anything unknown.
            _ => self.unsynced = true,
        }
    }

    /// The client's first copy message: the Syncs since the last Execute reached the server
    /// in copy-in mode, if the copy started.
    fn client_copy_begins(&mut self) {
        let syncs = core::mem::take(&mut self.syncs_since_execute);
        self.outstanding = self.outstanding.saturating_sub(syncs);
        if !self.copy_in {
            *self.unconfirmed_copy_syncs.get_or_insert(0) += syncs;
        }
    }

    /// Account for a message the server sent; `status` is set for a ReadyForQuery.
    pub fn server_message(&mut self, tag: u8, status: Option<TransactionStatus>) {
        match tag {
            b'G' => self.unconfirmed_copy_syncs = None,
            // The copy never started, so the server answers those Syncs after all.
            b'E' | b'C' => {
                if let Some(n) = self.unconfirmed_copy_syncs.take() {
                    self.outstanding = self.outstanding.saturating_add(n);
                }
            }
            _ => {}
        }
        match tag {
            b'Z' => {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.ready = status;
                self.copy_in = false;
                self.copy_out = false;
            }
            b'G' => {
                self.copy_in = true;
                self.ready = None;
            }
            b'H' | b'W' => {
                self.copy_out = true;
                self.ready = None;
            }
            // NoticeResponse, NotificationResponse and ParameterStatus may come at any time.
            b'N' | b'A' | b'S' => {}
            _ => self.ready = None,
        }
    }

    /// Whether the session may move now (given both streams are at a message boundary).
    pub fn is_safe(&self) -> bool {
        self.outstanding == 0
            && self.unconfirmed_copy_syncs.is_none()
            && !self.client_copying
            && !self.unsynced
            && !self.copy_in
            && !self.copy_out
            && !self.terminated
            && self.ready == Some(TransactionStatus::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> SafePoint {
        let mut s = SafePoint::default();
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        s
    }

    #[test]
    fn pipelined_queries_need_every_ready_for_query() {
        let mut s = idle();
        assert!(s.is_safe());
        s.client_message(b'Q');
        s.client_message(b'Q');
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(!s.is_safe(), "one query is still running");
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(s.is_safe());
    }

    #[test]
    fn extended_batch_waits_for_its_sync() {
        let mut s = idle();
        for tag in *b"PBDE" {
            s.client_message(tag);
        }
        assert!(!s.is_safe());
        s.client_message(b'S');
        s.server_message(b'1', None);
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(s.is_safe());
    }

    #[test]
    fn transactions_and_copy_are_not_safe() {
        let mut s = idle();
        s.client_message(b'Q');
        s.server_message(b'Z', Some(TransactionStatus::InTransaction));
        assert!(!s.is_safe());

        let mut s = idle();
        s.client_message(b'Q');
        s.server_message(b'G', None);
        s.client_message(b'd');
        s.client_message(b'S');
        assert_eq!(s.outstanding, 1, "Sync inside copy-in asks for nothing");
        s.client_message(b'c');
        s.server_message(b'C', None);
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(s.is_safe());
    }

    /// Bind, Execute and Sync, as a pipelining client sends them for a COPY.
    fn extended_copy(s: &mut SafePoint) {
        for tag in *b"BES" {
            s.client_message(tag);
        }
    }

    #[test]
    fn a_sync_sent_before_copy_in_is_ignored_by_the_server() {
        // CopyInResponse arrives before the client's copy data (tokio-postgres waits for it).
        let mut s = idle();
        extended_copy(&mut s);
        s.server_message(b'2', None);
        s.server_message(b'G', None);
        s.client_message(b'd');
        assert_eq!(s.outstanding, 0);
        s.client_message(b'c');
        s.client_message(b'S');
        assert!(!s.is_safe());
        s.server_message(b'C', None);
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(s.is_safe());

        // The client streams everything before any answer.
        let mut s = idle();
        extended_copy(&mut s);
        s.client_message(b'd');
        s.client_message(b'c');
        s.client_message(b'S');
        assert_eq!(s.outstanding, 1);
        assert!(!s.is_safe(), "the copy is not confirmed yet");
        s.server_message(b'2', None);
        s.server_message(b'G', None);
        s.server_message(b'C', None);
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(s.is_safe());
    }

    #[test]
    fn a_copy_that_fails_to_start_answers_every_sync() {
        let mut s = idle();
        extended_copy(&mut s);
        s.client_message(b'd');
        s.client_message(b'c');
        s.client_message(b'S');
        // No such table: the Execute fails, the first Sync ends the error, the copy messages
        // are ignored, and the second Sync gets its own ReadyForQuery.
        s.server_message(b'E', None);
        assert_eq!(s.outstanding, 2);
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(!s.is_safe(), "one more ReadyForQuery is coming");
        s.server_message(b'Z', Some(TransactionStatus::Idle));
        assert!(s.is_safe());
    }

    #[test]
    fn asynchronous_messages_keep_the_safe_point() {
        let mut s = idle();
        s.server_message(b'N', None);
        s.server_message(b'A', None);
        s.server_message(b'S', None);
        assert!(s.is_safe());
        s.server_message(b'D', None);
        assert!(!s.is_safe());
    }
}
