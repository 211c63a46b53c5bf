//! Remoting bodies that need fastjson quirks (object map keys).
