"""The networks (the audio CNN, the other views' encoders, the container) and the contrastive loss."""
