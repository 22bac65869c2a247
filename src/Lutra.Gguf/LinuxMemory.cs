using System.Runtime.InteropServices;

namespace Lutra.Gguf;

/// <summary>The one libc call the reader makes: dropping mapped pages this process no longer needs.</summary>
internal static partial class LinuxMemory
{
    private const int MadviseDontNeed = 4; // MADV_DONTNEED in Linux's mman-common.h

    /// <summary>madvise(MADV_DONTNEED) on a page-aligned range; false when the call is unavailable or refused.</summary>
    public static bool DontNeed(nuint address, nuint length)
    {
        try
        {
            return Madvise(address, length, MadviseDontNeed) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // an unusual libc: the pages simply stay resident
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nuint address, nuint length, int advice);
}
