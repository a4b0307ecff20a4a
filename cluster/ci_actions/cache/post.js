process.argv[2] = "cache-post-save";
require("./shim.js");
