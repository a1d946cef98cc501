//! WASI p2 for a guest: wasmtime-wasi's implementation, with the few calls
//! where its defaults would let a job spend what is not its own replaced.
//!
//! Links: everything `wasmtime_wasi::p2::add_to_linker_async` links, then
//! shadows five functions. Per-job state: none of its own (the ledger, the
//! caps and the resource table live in [`JobState`]). Limits:
//! - `create-tcp-socket`: at most `limits.open_sockets` sockets at once;
//! - `tcp-socket.start-bind`: refused (no grant lets a guest bind or listen;
//!   a connect binds implicitly, without reserving a port first);
//! - `descriptor.open-at`: only regular files and folders open (a FIFO, a
//!   device or a socket would block a thread of the host's pool, or reach
//!   something that is not a file);
//! - `wasi:random`'s `get-random-bytes`: at most [`MAX_RANDOM_BYTES`] a call,
//!   refused with a message that says so (the time it takes is the job's
//!   CPU, like any host call's);
//! - `descriptor.read-directory`: at most [`MAX_LISTINGS`] listings open at
//!   once (wasmtime-wasi reads a whole folder's listing into host memory).

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode as FsErrorCode, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::random::random;
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode as SocketErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket::Host as _;
use wasmtime_wasi::p2::{ReaddirIterator, TcpSocket};
use wasmtime_wasi::sockets::WasiSocketsView;

use super::JobState;
use super::limits::LimitExceeded;

/// The version of the WASI p2 interfaces wasmtime-wasi defines (guests'
/// imports of older 0.2 versions resolve to these).
const WASI_VERSION: &str = "0.2.12";

/// Largest `get-random-bytes` a guest may ask for in one call (libc asks for
/// at most 256 bytes at a time).
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Folder listings a job may hold open at once: each is the whole listing of
/// a granted folder, read into host memory when the guest asks for it.
pub const MAX_LISTINGS: u64 = 4;

/// Links WASI p2 with corral's replacements (five shadowed functions).
pub fn add_to_linker(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    linker
        .instance(&format!("wasi:sockets/tcp-create-socket@{WASI_VERSION}"))?
        .func_wrap(
            "create-tcp-socket",
            |mut store, (family,): (IpAddressFamily,)| {
                Ok((create_tcp_socket(store.data_mut(), family)?,))
            },
        )?;
    linker
        .instance(&format!("wasi:sockets/tcp@{WASI_VERSION}"))?
        .func_wrap(
            "[method]tcp-socket.start-bind",
            |_store,
             (_socket, _network, _address): (
                Resource<TcpSocket>,
                Resource<Network>,
                IpSocketAddress,
            )| { Ok((Err::<(), _>(SocketErrorCode::AccessDenied),)) },
        )?;
    linker
        .instance(&format!("wasi:filesystem/types@{WASI_VERSION}"))?
        .func_wrap_async(
            "[method]descriptor.open-at",
            |mut store,
             (dir, path_flags, path, open_flags, flags): (
                Resource<Descriptor>,
                PathFlags,
                String,
                OpenFlags,
                DescriptorFlags,
            )| {
                Box::new(async move {
                    let state = store.data_mut();
                    let opened =
                        open_regular(state, dir, path_flags, path, open_flags, flags).await?;
                    Ok((opened,))
                })
            },
        )?;
    linker
        .instance(&format!("wasi:random/random@{WASI_VERSION}"))?
        .func_wrap("get-random-bytes", |mut store, (len,): (u64,)| {
            if len > MAX_RANDOM_BYTES {
                return Err(wasmtime::format_err!(
                    "get-random-bytes asked for {len} bytes, over the {MAX_RANDOM_BYTES} bytes a call the host allows"
                ));
            }
            let random = store.data_mut().wasi.random();
            Ok((random::Host::get_random_bytes(random, len)?,))
        })?;
    linker
        .instance(&format!("wasi:filesystem/types@{WASI_VERSION}"))?
        .func_wrap_async(
            "[method]descriptor.read-directory",
            |mut store, (dir,): (Resource<Descriptor>,)| {
                Box::new(async move {
                    let state = store.data_mut();
                    Ok((read_directory(state, dir).await?,))
                })
            },
        )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Whether the job's resource table holds `limit` or more entries of `T`.
fn holds_at_least<T: 'static>(state: &mut JobState, limit: u64) -> bool {
    let held = state
        .table
        .iter_mut()
        .filter(|entry| entry.is::<T>())
        .count() as u64;
    held >= limit
}

/// `read-directory`, refused while the job holds [`MAX_LISTINGS`] listings.
async fn read_directory(
    state: &mut JobState,
    dir: Resource<Descriptor>,
) -> wasmtime::Result<Result<Resource<ReaddirIterator>, FsErrorCode>> {
    if holds_at_least::<ReaddirIterator>(state, MAX_LISTINGS) {
        state.ledger.refuse(LimitExceeded::FixedCap {
            resource: "folder listings open",
            limit: MAX_LISTINGS,
            label: "folder_listings",
        });
        return Ok(Err(FsErrorCode::InsufficientMemory));
    }
    match state.filesystem().read_directory(dir).await {
        Ok(listing) => Ok(Ok(listing)),
        Err(error) => error.downcast().map(Err),
    }
}

/// `create-tcp-socket`, refused past the job's cap.
fn create_tcp_socket(
    state: &mut JobState,
    family: IpAddressFamily,
) -> wasmtime::Result<Result<Resource<TcpSocket>, SocketErrorCode>> {
    let cap = u64::from(state.caps.open_sockets);
    if holds_at_least::<TcpSocket>(state, cap) {
        state.ledger.refuse(LimitExceeded::Cap {
            resource: "open sockets",
            limit: cap,
            key: "open_sockets",
        });
        return Ok(Err(SocketErrorCode::NewSocketLimit));
    }
    match state.sockets().create_tcp_socket(family) {
        Ok(socket) => Ok(Ok(socket)),
        Err(error) => error.downcast().map(Err),
    }
}

/// `open-at` for regular files and folders only: the path is looked at first
/// (as `open-at` would follow it), and anything else is refused before it is
/// opened. The folder is read-only to the guest, so only the operator can
/// swap what the path names in between.
async fn open_regular(
    state: &mut JobState,
    dir: Resource<Descriptor>,
    path_flags: PathFlags,
    path: String,
    open_flags: OpenFlags,
    flags: DescriptorFlags,
) -> wasmtime::Result<Result<Resource<Descriptor>, FsErrorCode>> {
    let mut fs = state.filesystem();
    let looked = fs
        .stat_at(Resource::new_borrow(dir.rep()), path_flags, path.clone())
        .await;
    // Not there: open-at says why (or creates it, where allowed).
    if let Ok(stat) = looked {
        match stat.type_ {
            DescriptorType::RegularFile | DescriptorType::Directory => {}
            DescriptorType::SymbolicLink if !path_flags.contains(PathFlags::SYMLINK_FOLLOW) => {}
            other => {
                tracing::warn!("guest tried to open {path}, a {other:?}: refused");
                return Ok(Err(FsErrorCode::Access));
            }
        }
    }
    match fs
        .open_at(
            Resource::new_borrow(dir.rep()),
            path_flags,
            path,
            open_flags,
            flags,
        )
        .await
    {
        Ok(opened) => Ok(Ok(opened)),
        Err(error) => error.downcast().map(Err),
    }
}
