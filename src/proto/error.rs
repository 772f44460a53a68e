//! Why the server refuses a request: the exact error strings of PROTOCOL.md, and the
//! ones ringcast adds (**ext**), as one enum.

/// Why a request is refused: each variant's `Display` is the exact `message` of the
/// `error` reply (PROTOCOL.md, Errors; **ext** marks ringcast's additions).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, not an object, no string `type`, or a field of the wrong JSON type.
    #[error("Invalid message format")]
    InvalidFormat,
    #[error("Unknown message type: {0}")]
    UnknownType(String),
    #[error("Room name required")]
    RoomNameRequired,
    #[error("Room does not exist")]
    RoomDoesNotExist,
    #[error("You are not in this room")]
    NotInRoom,
    #[error("Recipient not found")]
    RecipientNotFound,
    /// **ext**: over `rate_limit_per_s`.
    #[error("Rate limit exceeded")]
    RateLimited,
    /// **ext**: a join past `max_rooms_per_client`.
    #[error("Too many rooms")]
    TooManyRooms,
    /// **ext**: a join of a name over `max_room_name_bytes`.
    #[error("Room name too long")]
    RoomNameTooLong,
    /// **ext**: merged metadata over `max_metadata_bytes`.
    #[error("Metadata too large")]
    MetadataTooLarge,
    /// **ext**: a `set_metadata` giving `user` another value than the client's JWT `sub`.
    #[error("Cannot change user")]
    CannotChangeUser,
    /// **ext**: a join of a room not in the client's JWT `rooms` claim.
    #[error("Not allowed to join this room")]
    NotAllowedToJoin,
}
