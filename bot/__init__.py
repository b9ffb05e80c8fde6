"""sdbot: Stable Diffusion images from Telegram and Discord, one shared async core."""

__version__ = "0.1.0"
