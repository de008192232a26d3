"""weir over asyncio: ``weir.asyncio.pg``, a PostgreSQL proxy that moves live sessions."""
