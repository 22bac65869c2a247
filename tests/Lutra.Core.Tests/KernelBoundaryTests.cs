using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// The fast kernels never read past the last weight row or past the prepared activation state: both are placed so
/// that they end exactly where an inaccessible page begins (a memory-mapped GGUF's last tensor can end at the end
/// of the mapping). An over-read faults instead of passing silently.
/// </summary>
public unsafe partial class KernelBoundaryTests
{
    private static readonly GgmlType[] WeightTypes =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
        GgmlType.TQ1_0, GgmlType.TQ2_0,
    ];

    public static TheoryData<GgmlType, InstructionSet> TypesAndIsas()
    {
        var data = new TheoryData<GgmlType, InstructionSet>();
        foreach (var type in WeightTypes)
            foreach (var isa in KernelIsa.Supported)
                if (isa != InstructionSet.Scalar)
                    data.Add(type, isa);
        return data;
    }

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void Weights_and_activations_ending_at_an_inaccessible_page_are_not_over_read(GgmlType type, InstructionSet isa)
    {
        if (!OperatingSystem.IsLinux())
            Assert.Skip("guard pages are set up with Linux mmap/mprotect");
        var kernel = KernelTable.Get(type, isa);
        var rng = new Random(5);
        // Three super-blocks: odd counts of 256-element super-blocks and of 32-element block pairs.
        const int n = 768;
        const int rows = 3;
        var rowBytes = (int)QuantTypes.Get(type).RowBytes(n);
        var x = new float[n];
        var weights = new byte[rowBytes * rows];
        for (var r = 0; r < rows; r++)
        {
            for (var i = 0; i < n; i++)
                x[i] = (float)(rng.NextDouble() - 0.5);
            QuantReference.Quantize(type, x, weights.AsSpan(r * rowBytes, rowBytes));
        }
        for (var i = 0; i < n; i++)
            x[i] = (float)(rng.NextDouble() * 2 - 1);

        using var weightPages = new GuardedBuffer(weights.Length);
        using var statePages = new GuardedBuffer(kernel.ActivationBytes(n));
        weights.CopyTo(new Span<byte>(weightPages.Pointer, weights.Length));
        var y = new float[rows];
        fixed (float* px = x)
        fixed (float* py = y)
        {
            kernel.PrepareActivations(px, n, statePages.Pointer);
            kernel.MatVec(weightPages.Pointer, rowBytes, rows, statePages.Pointer, n, py);
        }

        var activations = new ReadOnlySpan<byte>(statePages.Pointer, kernel.StandardActivationBytes(n)).ToArray();
        var wf = new float[n];
        var af = new float[n];
        QuantReference.Dequantize(kernel.ActivationType, activations, af);
        for (var r = 0; r < rows; r++)
        {
            var row = weights.AsSpan(r * rowBytes, rowBytes);
            var expected = QuantReference.Dot(type, row, activations, n);
            QuantReference.Dequantize(type, row, wf);
            var magnitude = 0.0;
            for (var i = 0; i < n; i++)
                magnitude += Math.Abs((double)wf[i] * af[i]);
            Assert.True(Math.Abs(expected - y[r]) <= 1e-5 * magnitude + 1e-6, $"{kernel} row {r}: reference {expected}, kernel {y[r]}");
        }
    }

    /// <summary><paramref name="length"/> writable bytes (64-byte aligned start when the length is a multiple of 64) directly followed by a PROT_NONE page.</summary>
    private sealed class GuardedBuffer : IDisposable
    {
        private const int ProtNone = 0, ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20;
        private readonly byte* _mapping;
        private readonly nuint _mappingBytes;

        public GuardedBuffer(int length)
        {
            var page = (nuint)Environment.SystemPageSize;
            var dataPages = ((nuint)length + page - 1) / page;
            _mappingBytes = (dataPages + 1) * page;
            _mapping = (byte*)Mmap(null, _mappingBytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
            Assert.True(_mapping != (byte*)-1, $"mmap failed: errno {Marshal.GetLastPInvokeError()}");
            Assert.Equal(0, Mprotect(_mapping + dataPages * page, page, ProtNone));
            Pointer = _mapping + dataPages * page - (nuint)length;
        }

        public byte* Pointer { get; }

        public void Dispose() => Munmap(_mapping, _mappingBytes);
    }

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial void* Mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static partial int Mprotect(void* address, nuint length, int protection);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(void* address, nuint length);
}
