//! The codec every generated client and server uses: prost, with small initial buffers.
//!
//! tonic's default codec allocates 8 KiB to encode and 8 KiB to decode for every
//! streaming call, before any message is sent. A control replica holds one Session per
//! collector open for hours, and the messages on it are a few hundred bytes, so those
//! buffers were most of the memory an idle session costs. Here each buffer starts at
//! [`INITIAL_BUFFER_BYTES`] and grows as a message needs (a large audit listing still
//! works); tonic's yield threshold is unchanged.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of the encode and decode buffers of each call.
pub const INITIAL_BUFFER_BYTES: usize = 256;

/// Where tonic stops filling a buffer and yields: its default.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`INITIAL_BUFFER_BYTES`] buffers.
#[derive(Debug)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(INITIAL_BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
