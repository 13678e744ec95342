"""Write the synthetic COCO-WholeBody dataset: ``python scripts/make_synthetic.py --out data/synthetic``."""

from wbpose.synthetic.generate import main

if __name__ == "__main__":
    main()
