using System.Globalization;
using System.Text;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>
/// The global functions a chat template can call: jinja2's <c>range</c>, <c>dict</c>, <c>namespace</c>,
/// plus the two that transformers adds, <c>raise_exception</c> and <c>strftime_now</c>.
/// </summary>
internal static class TemplateGlobals
{
    // jinja2's sandbox refuses ranges longer than this, which also keeps loops bounded.
    private const long MaxRange = 100_000;

    private static readonly string[] DayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    private static readonly string[] MonthNames =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    public static void AddTo(Scope scope, DateTime now)
    {
        scope.Set("raise_exception", new TemplateFunction("raise_exception", args =>
            throw new TemplateRuntimeException(args.Positional.Count > 0 ? PyValue.ToStr(args.Positional[0]) : "raise_exception() called")));
        scope.Set("strftime_now", new TemplateFunction("strftime_now", args =>
        {
            var format = args.Bind("format")[0] as string ?? throw new TemplateRuntimeException("strftime_now() needs a format string");
            return Strftime(now, format);
        }));
        scope.Set("namespace", new TemplateFunction("namespace", Namespace));
        scope.Set("dict", new TemplateFunction("dict", args =>
        {
            var dict = new TemplateDict();
            foreach (var positional in args.Positional)
            {
                if (positional is not TemplateDict source)
                    throw new TemplateRuntimeException("dict() positional argument must be a mapping");
                foreach (var (k, v) in source)
                    dict[k] = v;
            }
            foreach (var (name, value) in args.Named)
                dict[name] = value;
            return dict;
        }));
        scope.Set("range", new TemplateFunction("range", Range));
    }

    private static TemplateNamespace Namespace(CallArguments args)
    {
        var ns = new TemplateNamespace();
        foreach (var positional in args.Positional)
        {
            if (positional is not TemplateDict source)
                throw new TemplateRuntimeException("namespace() positional argument must be a mapping");
            foreach (var (k, v) in source)
                ns.Attributes[k as string ?? throw new TemplateRuntimeException("namespace() keys must be strings")] = v;
        }
        foreach (var (name, value) in args.Named)
            ns.Attributes[name] = value;
        return ns;
    }

    private static TemplateList Range(CallArguments args)
    {
        if (args.Named.Count > 0 || args.Positional.Count is 0 or > 3)
            throw new TemplateRuntimeException("range() takes 1 to 3 positional arguments");
        long start = 0, step = 1, stop;
        if (args.Positional.Count == 1)
        {
            stop = PyValue.ToLong(args.Positional[0]);
        }
        else
        {
            start = PyValue.ToLong(args.Positional[0]);
            stop = PyValue.ToLong(args.Positional[1]);
            if (args.Positional.Count == 3)
                step = PyValue.ToLong(args.Positional[2]);
        }
        if (step == 0)
            throw new TemplateRuntimeException("range() arg 3 must not be zero");
        var count = step > 0 ? (stop - start + step - 1) / step : (start - stop - step - 1) / -step;
        if (count > MaxRange)
            throw new TemplateRuntimeException($"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxRange}).");
        var list = new TemplateList();
        for (var i = 0L; i < count; i++)
            list.Add(start + (i * step));
        return list;
    }

    /// <summary>
    /// C-locale <c>strftime</c> as Python calls it on Linux, including glibc's <c>%-d</c> (no padding)
    /// and <c>%e</c> (space padding). Unknown directives are copied through.
    /// </summary>
    public static string Strftime(DateTime t, string format)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            var c = format[i];
            if (c != '%' || i + 1 >= format.Length)
            {
                sb.Append(c);
                continue;
            }
            var noPad = format[i + 1] == '-' && i + 2 < format.Length;
            var directive = noPad ? format[i + 2] : format[i + 1];
            string Num(int value, int width) => noPad ? value.ToString(CultureInfo.InvariantCulture) : value.ToString(new string('0', width), CultureInfo.InvariantCulture);
            string? text = directive switch
            {
                'a' => DayNames[(int)t.DayOfWeek][..3],
                'A' => DayNames[(int)t.DayOfWeek],
                'b' or 'h' => MonthNames[t.Month - 1][..3],
                'B' => MonthNames[t.Month - 1],
                'd' => Num(t.Day, 2),
                'e' => noPad ? Num(t.Day, 1) : t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'm' => Num(t.Month, 2),
                'y' => Num(t.Year % 100, 2),
                'Y' => t.Year.ToString(CultureInfo.InvariantCulture),
                'H' => Num(t.Hour, 2),
                'I' => Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2),
                'M' => Num(t.Minute, 2),
                'S' => Num(t.Second, 2),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => Num(t.DayOfYear, 3),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", CultureInfo.InvariantCulture),
                'w' => ((int)t.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'u' => (t.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)t.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'D' => Strftime(t, "%m/%d/%y"),
                'F' => Strftime(t, "%Y-%m-%d"),
                'T' => Strftime(t, "%H:%M:%S"),
                'R' => Strftime(t, "%H:%M"),
                'c' => Strftime(t, "%a %b %e %H:%M:%S %Y"),
                'x' => Strftime(t, "%m/%d/%y"),
                'X' => Strftime(t, "%H:%M:%S"),
                'Z' or 'z' => "",
                'n' => "\n",
                't' => "\t",
                '%' => "%",
                _ => null,
            };
            if (text is null)
            {
                sb.Append(c);
                continue;
            }
            sb.Append(text);
            i += noPad ? 2 : 1;
        }
        return sb.ToString();
    }
}
