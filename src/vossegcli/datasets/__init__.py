"""The datasets vosseg trains and measures on: where they live and their splits (:mod:`.roots`),
the one cut-out kit (:mod:`.cutouts`), rendered scenes of cut-outs (:mod:`.scenes`) and clips in
memory (:mod:`.clips`)."""
