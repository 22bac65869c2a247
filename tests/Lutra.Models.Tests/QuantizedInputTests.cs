using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Threading;
using Lutra.Models.Blocks;

namespace Lutra.Models.Tests;

/// <summary>
/// Prepared inputs: a lookup-table kernel's tables are held one token group at a time (per thread), an int8 kernel's
/// rows for the whole batch; any range of rows is prepared exactly as the kernel prepares each row on its own.
/// </summary>
public sealed unsafe class QuantizedInputTests
{
    private const int Columns = 2048;

    private static float[] Input(int rows)
    {
        var random = new Random(7);
        return [.. Enumerable.Range(0, rows * Columns).Select(_ => (float)(random.NextDouble() * 2 - 1))];
    }

    private static byte[] Prepared(MatVecKernel kernel, float[] x, int row)
    {
        var state = new byte[kernel.ActivationBytes(Columns)];
        fixed (float* xp = x)
        fixed (byte* sp = state)
            kernel.PrepareActivations(xp + (long)row * Columns, Columns, sp);
        return Defined(kernel, state);
    }

    /// <summary>A state without the padding between the standard row and the kernel's sidecar, which nothing writes.</summary>
    private static byte[] Defined(MatVecKernel kernel, ReadOnlySpan<byte> state)
    {
        var standard = kernel.StandardActivationBytes(Columns);
        var sidecar = (standard + 63) & ~63;
        return [.. state[..standard], .. state[Math.Min(sidecar, state.Length)..]];
    }

    private static byte[] At(MatVecKernel kernel, byte* states, int stride, int row) =>
        Defined(kernel, new ReadOnlySpan<byte>(states + (long)row * stride, stride));

    [Fact]
    public void Large_lookup_tables_are_held_one_token_group_at_a_time_and_others_for_the_whole_batch()
    {
        var tables = KernelTable.RepackingKernels(GgmlType.TQ1_0, KernelIsa.Selected).FirstOrDefault(k => k.UsesLookupTables);
        if (tables is null)
            Assert.Skip("no 5-trit lookup-table kernel on this instruction set");
        var bitSerial = KernelTable.RepackingKernels(GgmlType.Q4_0, KernelIsa.Selected).First(k => k.UsesLookupTables);
        var rows = KernelTable.Get(GgmlType.Q8_0);
        var input = new QuantizedInput([tables, bitSerial, rows], maxRows: 512, maxColumns: Columns, threads: 2);
        input.Bind(Input(40), 40, Columns);
        Assert.Equal(MatMulWork.TokenGroup(tables.ActivationBytes(Columns), 40), input.RowsAtOnce(tables));
        Assert.InRange(input.RowsAtOnce(tables), 1, 8);
        Assert.Equal(40, input.RowsAtOnce(bitSerial));
        Assert.Equal(40, input.RowsAtOnce(rows));
        Assert.Throws<ArgumentOutOfRangeException>(() => input.Get(tables, out _, null, out _));
        input.Get(bitSerial, out _, null, out _);
        input.Get(rows, out _, null, out _);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_range_of_rows_is_prepared_as_each_row_alone_for_the_shared_states_and_each_thread(int threads)
    {
        var kernel = KernelTable.RepackingKernels(GgmlType.TQ1_0, KernelIsa.Selected).FirstOrDefault(k => k.UsesLookupTables)
            ?? KernelTable.Get(GgmlType.Q4_0);
        var x = Input(11);
        var input = new QuantizedInput([kernel], maxRows: 64, maxColumns: Columns, threads: threads);
        input.Bind(x, 11, Columns);
        using var pool = new ComputePool(threads);
        var group = input.RowsAtOnce(kernel);
        for (var first = 0; first < 11; first += group)
        {
            var count = Math.Min(group, 11 - first);
            var states = input.Get(kernel, first, count, out var stride, pool, out var perThread);
            for (var r = 0; r < count && !perThread; r++)
                Assert.Equal(Prepared(kernel, x, first + r), At(kernel, states, stride, r));
        }
        if (!kernel.UsesLookupTables)
            return;
        for (var thread = 0; thread < threads; thread++)
        {
            var states = input.PrepareForThread(kernel, 4, Math.Min(group, 3), thread, out var stride);
            for (var r = 0; r < Math.Min(group, 3); r++)
                Assert.Equal(Prepared(kernel, x, 4 + r), At(kernel, states, stride, r));
        }
        // Thread 0's group overwrote the shared states of the last range: asked again, they are prepared again.
        var last = (11 - 1) / group * group;
        var again = input.Get(kernel, last, 11 - last, out var s0, null, out _);
        Assert.Equal(Prepared(kernel, x, last), At(kernel, again, s0, 0));
    }
}
