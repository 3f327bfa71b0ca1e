"""The datasets vosseg trains and measures on: where they live, their splits, and the cut-out kit
that builds synthetic clips from saliency images."""
