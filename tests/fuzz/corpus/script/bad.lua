machine { kernel = "x", memory = "lots" }
