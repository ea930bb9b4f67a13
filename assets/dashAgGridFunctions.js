// Functions the transactions grid's column definitions call by name (dash-ag-grid looks them up here:
// its own expression reader cannot construct objects, so `new Intl.NumberFormat(...)` there gave nothing).
var dagfuncs = (window.dashAgGridFunctions = window.dashAgGridFunctions || {});

// A money cell in the data's currency, written the way the reader's locale writes it; blank when empty.
dagfuncs.money = function (value, locale, currency) {
    if (value === null || value === undefined || value === "") {
        return "";
    }
    return new Intl.NumberFormat(locale, {style: "currency", currency: currency}).format(value);
};
