"""Who asks and where: people and chats, their languages, allowed channels, the inbox of events."""
