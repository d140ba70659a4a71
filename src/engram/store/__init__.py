"""Storage backends behind one narrow protocol."""
