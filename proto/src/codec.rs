//! The hybrid protocol's codec: prost's, except that a message that does not parse is the sender's fault
//! (`InvalidArgument`, the 400 of the HTTP transport) rather than the server's (`Internal`, tonic's
//! default), so a runner, a monitor or an operator never reads bad input as a broken API node.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstEncoder};

/// Encodes `T` and decodes `U` as prost does; see the module docs for how decoding fails.
#[derive(Debug, Clone)]
pub struct HybridCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for HybridCodec<T, U> {
    fn default() -> Self {
        HybridCodec(PhantomData)
    }
}

impl<T, U> Codec for HybridCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = HybridDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> HybridDecoder<U> {
        HybridDecoder(PhantomData)
    }
}

/// Decodes `U`; a message that does not parse is `InvalidArgument`.
#[derive(Debug)]
pub struct HybridDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for HybridDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| Status::invalid_argument(format!("Invalid message: {e}")))
    }
}
