#if canImport(Glibc)
import Glibc
#endif

/// Hands the heap pages freed by a large piece of work back to the system.
///
/// A reload reads every file and decodes the whole YAML file; once the new set is in place
/// those megabytes are free, but glibc's allocator keeps them mapped, so the process's
/// PSS stays up by the size of the work (a fifth of the set at 10,000 entries). HAProxy
/// calls `malloc_trim` after loading for the same reason. Not exported by Swift's Glibc
/// module, it is found with `dlsym`; elsewhere this does nothing.
enum FreedMemory {
    static func release() {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        let trim = unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        _ = trim(0)
        #endif
    }
}
