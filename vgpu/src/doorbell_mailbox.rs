//! The doorbell mailbox, device side (`PROTOCOL.md`, "Doorbell mailbox"): a ring of work-submit
//! tokens in the guest's window. The driver publishes tokens by moving `HEAD`; while the device
//! polls, it drains them, checking each one exactly as a `DOORBELL` write, so a polled guest
//! rings doorbells without an exit.
//!
//! Everything in the mailbox is guest memory and hostile: the device keeps its own consumer
//! index (the `TAIL` it publishes is a copy), drains at most the budget its caller gives per
//! call (a guest that only moves `HEAD` costs the host a bounded number of token checks per
//! poll), and treats a `HEAD` further ahead than the ring holds as an overrun (tokens dropped,
//! error reported) rather than reading stale slots.

use std::sync::atomic::{fence, Ordering};

use vm_memory::{Bytes, GuestAddress};

use crate::protocol::mailbox;
use crate::service::{DoorbellError, EscapeService, Gfid};
use crate::window::HostWindow;

/// Doorbells rung from a mailbox, with the RM core's answer to each, for the device to count.
pub type Rung = Vec<(u32, Result<(), DoorbellError>)>;

/// A driver published more tokens than the mailbox holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("doorbell mailbox overrun: {published} tokens published past the last drain")]
pub struct Overrun {
    /// Tokens the driver claimed to have published since the last drain.
    pub published: u32,
}

/// The mailbox the driver registered, and how far the device has drained it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorbellMailbox {
    at: u64,
    tail: u32,
}

impl DoorbellMailbox {
    /// The mailbox at window offset `at`, if it is aligned and lies wholly in the window. The
    /// device takes over from the `HEAD` it finds (tokens published before registration are not
    /// rung) and clears `FLAGS`.
    pub fn register(window: &HostWindow, at: u64) -> Option<Self> {
        let fits = at != 0
            && at.is_multiple_of(mailbox::ALIGN)
            && at
                .checked_add(mailbox::SIZE)
                .is_some_and(|end| end <= window.size());
        if !fits {
            return None;
        }
        let mut m = Self { at, tail: 0 };
        m.tail = m.load(window, mailbox::HEAD);
        m.store(window, mailbox::TAIL, m.tail);
        m.store(window, mailbox::FLAGS, 0);
        Some(m)
    }

    /// Window offset of the mailbox.
    pub fn offset(&self) -> u64 {
        self.at
    }

    /// Tells the driver whether the device drains the mailbox now. Returns whether tokens are
    /// waiting, read after the flag changed (so a token published against the old flag is
    /// either seen here or its driver saw the new flag and wrote `DOORBELL` as well).
    pub fn set_polled(&mut self, window: &HostWindow, polled: bool) -> bool {
        self.store(
            window,
            mailbox::FLAGS,
            if polled { mailbox::POLLED } else { 0 },
        );
        fence(Ordering::SeqCst);
        self.load(window, mailbox::HEAD) != self.tail
    }

    /// Hands the tokens published since the last drain to `ring`, in order, at most `max` of
    /// them (the rest wait for the next drain), and publishes the new `TAIL`. Returns how many it
    /// handed over.
    pub fn drain(
        &mut self,
        window: &HostWindow,
        max: u32,
        mut ring: impl FnMut(u32),
    ) -> Result<u32, Overrun> {
        let head = self.load(window, mailbox::HEAD);
        let published = head.wrapping_sub(self.tail);
        if published == 0 {
            return Ok(0);
        }
        if published > mailbox::SLOTS {
            self.tail = head;
            self.store(window, mailbox::TAIL, head);
            return Err(Overrun { published });
        }
        let n = published.min(max);
        for i in 0..n {
            let slot = self.tail.wrapping_add(i) % mailbox::SLOTS;
            ring(self.load(window, mailbox::TOKENS + 4 * u64::from(slot)));
        }
        self.tail = self.tail.wrapping_add(n);
        self.store(window, mailbox::TAIL, self.tail);
        Ok(n)
    }

    /// Drains at most `max` tokens, ringing each at `service` for `gfid` and appending it with
    /// its answer to `rung`. Returns how many it rang.
    pub fn ring(
        &mut self,
        window: &HostWindow,
        max: u32,
        gfid: Gfid,
        service: &mut dyn EscapeService,
        rung: &mut Rung,
    ) -> Result<u32, Overrun> {
        self.drain(window, max, |t| rung.push((t, service.doorbell(gfid, t))))
    }

    fn load(&self, window: &HostWindow, field: u64) -> u32 {
        // In bounds and 4-byte aligned by construction, so the load cannot fail.
        window
            .memory()
            .load(GuestAddress(self.at + field), Ordering::Acquire)
            .unwrap_or(0)
    }

    fn store(&self, window: &HostWindow, field: u64, value: u32) {
        let _ = window
            .memory()
            .store(value, GuestAddress(self.at + field), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 0x5000;

    fn window() -> HostWindow {
        HostWindow::new(64 << 10).unwrap()
    }

    fn put(w: &HostWindow, field: u64, v: u32) {
        w.write(AT + field, &v.to_le_bytes()).unwrap();
    }

    fn get(w: &HostWindow, field: u64) -> u32 {
        let mut b = [0u8; 4];
        w.read(AT + field, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    /// Publishes `tokens` as a driver does: slots first, then `HEAD`.
    fn publish(w: &HostWindow, tokens: &[u32]) {
        let mut head = get(w, mailbox::HEAD);
        for &t in tokens {
            put(w, mailbox::TOKENS + 4 * u64::from(head % mailbox::SLOTS), t);
            head = head.wrapping_add(1);
        }
        put(w, mailbox::HEAD, head);
    }

    #[test]
    fn only_aligned_mailboxes_inside_the_window_register() {
        let w = window();
        let size = w.size();
        for bad in [0, AT + 4, size - mailbox::SIZE + 16, size, u64::MAX - 15] {
            assert_eq!(DoorbellMailbox::register(&w, bad), None, "{bad:#x}");
        }
        assert!(DoorbellMailbox::register(&w, size - mailbox::SIZE).is_some());
    }

    #[test]
    fn tokens_come_out_in_order_across_the_ring_end_and_tail_follows() {
        let w = window();
        // A driver that already published 250 tokens before registering: those are not rung.
        put(&w, mailbox::HEAD, 250);
        let mut m = DoorbellMailbox::register(&w, AT).unwrap();
        assert_eq!(get(&w, mailbox::TAIL), 250);
        let tokens: Vec<u32> = (0..10).map(|i| 0x100 + i).collect();
        publish(&w, &tokens);
        let mut rung = Vec::new();
        assert_eq!(m.drain(&w, 4, |t| rung.push(t)), Ok(4));
        assert_eq!(get(&w, mailbox::TAIL), 254);
        assert_eq!(m.drain(&w, mailbox::SLOTS, |t| rung.push(t)), Ok(6));
        assert_eq!(rung, tokens);
        assert_eq!(get(&w, mailbox::TAIL), 260);
        assert_eq!(
            m.drain(&w, mailbox::SLOTS, |_| panic!("nothing new")),
            Ok(0)
        );
    }

    #[test]
    fn a_head_beyond_the_ring_is_an_overrun_that_rings_nothing() {
        let w = window();
        let mut m = DoorbellMailbox::register(&w, AT).unwrap();
        put(&w, mailbox::HEAD, mailbox::SLOTS + 1);
        assert_eq!(
            m.drain(&w, mailbox::SLOTS, |_| panic!("an overrun rings nothing")),
            Err(Overrun {
                published: mailbox::SLOTS + 1
            })
        );
        // A driver writing TAIL itself changes nothing: the device keeps its own index.
        put(&w, mailbox::TAIL, 0);
        publish(&w, &[7]);
        let mut rung = Vec::new();
        assert_eq!(m.drain(&w, mailbox::SLOTS, |t| rung.push(t)), Ok(1));
        assert_eq!(rung, [7]);
    }

    #[test]
    fn the_flag_follows_polling_and_stopping_reports_what_is_waiting() {
        let w = window();
        let mut m = DoorbellMailbox::register(&w, AT).unwrap();
        assert!(!m.set_polled(&w, true));
        assert_eq!(get(&w, mailbox::FLAGS), mailbox::POLLED);
        publish(&w, &[1, 2]);
        assert!(m.set_polled(&w, false));
        assert_eq!(get(&w, mailbox::FLAGS), 0);
        assert_eq!(m.drain(&w, mailbox::SLOTS, |_| {}), Ok(2));
        assert!(!m.set_polled(&w, false));
    }
}
