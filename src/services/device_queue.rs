//! Writes waiting for their batch, at most one per device (the latest): what the check-in
//! buffer (`checkins`) and the served-audit queue (`served_audit`) share. Each says what an
//! entry is and how a batch is written; this keeps them, says when the queue is full, hands
//! them out in device order, takes back what a failed write left, and gives one flush at a
//! time its turn.

use crate::domain::DeviceId;
use std::collections::HashMap;
use std::sync::Mutex;

pub struct DeviceQueue<T> {
    pending: Mutex<HashMap<DeviceId, T>>,
    /// Held through a flush, so that a flush returns only once what was queued before it is
    /// written, even when another flush (the timer's, a full queue's) drained it first.
    flushing: tokio::sync::Mutex<()>,
    capacity: usize,
}

impl<T> std::fmt::Debug for DeviceQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceQueue")
            .field("pending", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<T> DeviceQueue<T> {
    /// Full at `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            capacity: capacity.max(1),
        }
    }

    /// What `read` makes of the entry waiting for `device`, if any.
    pub fn get<R>(&self, device: DeviceId, read: impl FnOnce(&T) -> R) -> Option<R> {
        self.lock().get(&device).map(read)
    }

    /// How many entries wait.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues an entry, replacing the device's earlier one; true when the queue is full and
    /// should be written now.
    pub fn push(&self, device: DeviceId, entry: T) -> bool {
        let mut pending = self.lock();
        pending.insert(device, entry);
        pending.len() >= self.capacity
    }

    /// The turn to flush: held while draining and writing.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.flushing.lock().await
    }

    /// Everything queued, in device order: device ids grow with registration time, as the rows
    /// do, so a batch of neighbours dirties fewer pages and index leaves than a random one.
    pub fn drain(&self) -> Vec<(DeviceId, T)> {
        let mut drained: Vec<_> = self.lock().drain().collect();
        drained.sort_unstable_by_key(|(device, _)| *device);
        drained
    }

    /// Takes back entries a failed write left, unless a newer one for the device came since.
    pub fn restore(&self, unwritten: Vec<(DeviceId, T)>) {
        let mut pending = self.lock();
        for (device, entry) in unwritten {
            pending.entry(device).or_insert(entry);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, T>> {
        // A poisoned lock only means a thread panicked mid-insert; the map is still a map.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_hands_out_the_latest_entries_in_device_order() {
        let queue = DeviceQueue::new(100);
        let ids: Vec<DeviceId> = (0..20).map(|_| DeviceId::new()).collect();
        for (n, id) in ids.iter().rev().enumerate() {
            queue.push(*id, n);
        }
        queue.push(ids[0], 99);
        let drained = queue.drain();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(drained.iter().map(|(id, _)| *id).collect::<Vec<_>>(), sorted);
        assert_eq!(
            drained.iter().find(|(id, _)| *id == ids[0]).map(|(_, n)| *n),
            Some(99)
        );
        assert!(queue.drain().is_empty());
    }

    #[test]
    fn a_full_queue_says_so_and_a_restore_keeps_newer_entries() {
        let queue = DeviceQueue::new(2);
        let (a, b) = (DeviceId::new(), DeviceId::new());
        assert!(!queue.push(a, 1));
        assert!(queue.push(b, 1));
        let unwritten = queue.drain();
        queue.push(a, 2);
        queue.restore(unwritten);
        assert_eq!(queue.get(a, |n| *n), Some(2), "the newer entry stays");
        assert_eq!(queue.get(b, |n| *n), Some(1), "the unwritten one comes back");
    }
}
