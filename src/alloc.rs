//! Hands memory back to the OS after a big load: building the category DB from list files
//! allocates several times the table's final size, and glibc keeps freed memory in its arenas
//! unless asked, which shows as resident memory that nothing uses.

/// Returns free heap pages to the OS (glibc only; a no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
