//! Frees: one object, or a whole client with whatever it still holds (channels before their
//! TSGs), releasing the sim objects behind them.

use super::{st, SimBackend, SimObject};
use rm_abi::{Handle, NvStatus};
use rm_core::backend::Gfid;

impl SimBackend {
    /// [`rm_core::backend::Backend::free`]: frees `object`, and with the client handle the
    /// whole client.
    pub(super) fn free_handle(&mut self, gfid: Gfid, client: Handle, object: Handle) -> NvStatus {
        if let Err(s) = self.get(gfid, client, object) {
            return s;
        }
        let Some(obj) = self.objects.remove(&(client, object)) else {
            return NvStatus::ERR_INVALID_OBJECT_HANDLE;
        };
        self.cpu_maps
            .retain(|_, m| !(m.client == client && (m.object == object || object == client)));
        if object == client {
            // The core frees children first; anything left is released here all the same,
            // channels before their TSGs.
            self.owners.remove(&client);
            let rest: Vec<SimObject> = self
                .objects
                .iter()
                .filter(|((c, _), _)| *c == client)
                .map(|(_, o)| o.clone())
                .collect();
            self.objects.retain(|(c, _), _| *c != client);
            let rank = |o: &SimObject| match o {
                SimObject::Channel { .. } => 0,
                SimObject::Tsg { .. } => 1,
                _ => 2,
            };
            let mut rest = rest;
            rest.sort_by_key(rank);
            for o in rest {
                self.free_object(o);
            }
        }
        self.free_object(obj)
    }

    fn free_object(&mut self, obj: SimObject) -> NvStatus {
        if let SimObject::Channel { ch, .. } = obj {
            self.channel_clients.remove(&ch);
        }
        let mut gpu = self.lock();
        match obj {
            SimObject::VaSpace { id, .. } => st(gpu.destroy_vaspace(id)),
            SimObject::Tsg { tsg, .. } => st(gpu.destroy_tsg(tsg)),
            SimObject::Channel { ch, internal_userd } => {
                let r = gpu.destroy_channel(ch);
                if let Some(id) = internal_userd {
                    let _ = gpu.free_memory(id);
                }
                st(r)
            }
            SimObject::Memory { id } => st(gpu.free_memory(id)),
            _ => NvStatus::OK,
        }
    }
}
