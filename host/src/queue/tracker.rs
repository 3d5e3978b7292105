//! Knows, per message, how many recipients and journal copies are still outstanding; when none
//! are, the message is finished in the spool and the mail log says so.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::envelope::Mid;
use crate::maillog::MailLog;
use crate::spool::{Location, Spool};

#[derive(Debug)]
struct Outstanding {
    location: Location,
    count: usize,
}

#[derive(Debug, Default)]
pub struct Tracker {
    messages: Mutex<HashMap<Mid, Outstanding>>,
}

impl Tracker {
    /// Starts tracking a message with `count` outstanding deliveries (recipients + journal copies).
    pub fn register(&self, mid: Mid, location: Location, count: usize) {
        self.messages
            .lock()
            .expect("tracker lock")
            .insert(mid, Outstanding { location, count });
    }

    /// One delivery of `mid` is finished; finishes the message when it was the last.
    pub fn done(&self, mid: Mid, n: usize, spool: &Spool, log: &MailLog) {
        let finished = {
            let mut messages = self.messages.lock().expect("tracker lock");
            match messages.get_mut(&mid) {
                Some(m) => {
                    m.count = m.count.saturating_sub(n);
                    if m.count == 0 {
                        messages.remove(&mid).map(|m| m.location)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let Some(location) = finished {
            spool.record_finished(mid, location);
            log.info(format_args!("Message finished MID {mid} done"));
        }
    }

    pub fn len(&self) -> usize {
        self.messages.lock().expect("tracker lock").len()
    }
}
