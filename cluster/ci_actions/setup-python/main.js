process.argv[2] = "setup-python";
require("./shim.js");
